"""HTTP routes of the audit service, one router per resource."""
