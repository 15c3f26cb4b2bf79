"""Small helpers shared by vis_core and the tools."""
