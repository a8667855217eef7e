"""Memory and FLOP prediction for networks, and the planner that fits a budget."""
