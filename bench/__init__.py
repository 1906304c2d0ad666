"""HelixCode's benchmark against its peers: ``python -m bench [--quick] [--only NAME]``, ``make bench``."""
