"""The customer's preference center: signed links, the page, and its strings."""
