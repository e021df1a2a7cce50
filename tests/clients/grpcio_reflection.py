"""A grpcio (grpc-core) server offering only server reflection, for the
services of a descriptor set: like grpc-go, it sends response headers only
with its first response. Prints its port, then serves until killed.

    python3 grpcio_reflection.py DESCRIPTOR_SET SERVICE...
"""

import sys
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection


def main():
    path, services = sys.argv[1], sys.argv[2:]
    with open(path, "rb") as f:
        files = descriptor_pb2.FileDescriptorSet.FromString(f.read()).file
    pool = descriptor_pool.Default()
    pending = list(files)
    # Dependencies first: retry what fails until nothing more can be added.
    while pending:
        left = []
        for file in pending:
            try:
                pool.Add(file)
            except Exception:  # already there, or a dependency is missing yet
                left.append(file)
        if len(left) == len(pending):
            break
        pending = left
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    reflection.enable_server_reflection(services + [reflection.SERVICE_NAME], server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
