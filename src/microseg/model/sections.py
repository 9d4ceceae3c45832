"""The policy's section names, in the order they are written to a policy file.

Kept apart from the pydantic types (`microseg.model.SECTIONS` maps each to its type) so the
CLI's help can name them without loading the model.
"""

SECTION_NAMES = (
    "devices",
    "monitor_nodes",
    "domains",
    "categories",
    "groups",
    "services",
    "monitor_objects",
    "redirect_objects",
    "rules",
    "policies",
)
