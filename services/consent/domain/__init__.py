"""The consent service's pure core: consent types and commands, the policy (rules), privacy helpers."""
