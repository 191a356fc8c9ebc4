"""gRPC services between controllers and brokers; *_pb2* modules are generated (`make proto`)."""
