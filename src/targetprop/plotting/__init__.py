"""Figures: learning curves from run directories, image grids."""
