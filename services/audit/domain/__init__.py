"""The audit service's pure core: hash chain, Merkle tree, checkpoints, verification, source rules."""
