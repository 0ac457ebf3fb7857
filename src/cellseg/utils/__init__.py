"""Small helpers shared by cellseg's commands."""
