"""Models shared by the methods: backbones, heads, losses, criteria, box coding."""
