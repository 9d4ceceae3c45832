"""Arista EOS: the eAPI driver (`driver.py`) and the running-config sections it owns."""
