"""The node application: configuration, the alert service and the runtime that wires it."""
