"""The node: built from settings in one place, its listeners bound, its processes supervised."""
