"""gRPC adapters: proto <-> model conversion, services, error mapping and a client."""
