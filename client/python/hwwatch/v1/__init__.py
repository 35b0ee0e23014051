"""hwwatch.v1: the API's messages and gRPC stubs.

hwwatch_pb2 and hwwatch_pb2_grpc are generated from proto/hwwatch/v1/hwwatch.proto
at build time (client/python/CMakeLists.txt) and land beside this file in
the build tree and in an installed copy; they are not kept in the source tree.
"""
