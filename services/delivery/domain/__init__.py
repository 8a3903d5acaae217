"""The delivery service's pure core: destinations and their agreements, routing, signatures."""
