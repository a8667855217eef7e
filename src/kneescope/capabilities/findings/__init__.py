"""The findings capability: MRI findings per knee and compartment in the MOAKS style
(cartilage defects, bone-marrow lesions, meniscal tears, meniscal extrusion) and the
``mri_findings`` item step."""
