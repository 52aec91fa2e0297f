"""A gRPC health client that is not ours: grpcio's own (PyPI `grpcio` and
`grpcio-health-checking`), against the server at argv[1] (HOST:PORT,
plaintext), asking Check for each service named after it ("" is the server
as a whole) and the first answer of Watch for the first one.

Prints one JSON object: service -> status name (SERVING, NOT_SERVING) or the
gRPC error code's name (NOT_FOUND), and "watch" -> the first status Watch
sends."""

import json
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> None:
    address, services = sys.argv[1], sys.argv[2:]
    answers = {}
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                answers[service] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as e:
                answers[service] = e.code().name
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=services[0]), timeout=10)
        first = next(iter(watch))
        answers["watch"] = health_pb2.HealthCheckResponse.ServingStatus.Name(first.status)
        watch.cancel()
    print(json.dumps(answers, sort_keys=True))


if __name__ == "__main__":
    main()
