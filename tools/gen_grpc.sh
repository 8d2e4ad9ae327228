#!/usr/bin/env bash
# Regenerates Sources/BanyanGRPC/Generated/ from proto/ (docs/CLIENTS.md, "gRPC"). The output is
# committed, so neither CI nor a normal build runs this: only a change to a .proto file needs it.
# Needs protoc (Debian: protobuf-compiler) and builds the two protoc plugins once, in a scratch
# directory outside the repository, from grpc-swift-protobuf at the version Package.swift names:
#   protoc-gen-grpc-swift-2, and protoc-gen-swift from the swift-protobuf that version resolves.
# Usage: tools/gen_grpc.sh [SCRATCH_DIR]   (default: /tmp/banyan-grpc-plugins)
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="${1:-/tmp/banyan-grpc-plugins}"
command -v protoc >/dev/null || { echo "gen_grpc: protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }
version=$(sed -n 's|.*grpc/grpc-swift-protobuf.git", from: "\([0-9.]*\)".*|\1|p' Package.swift)
if [ ! -x "$scratch/gsp/.build/debug/protoc-gen-grpc-swift-2" ] || [ ! -x "$scratch/gsp/.build/debug/protoc-gen-swift" ]; then
  mkdir -p "$scratch"
  [ -d "$scratch/gsp" ] || git clone -q https://github.com/grpc/grpc-swift-protobuf.git "$scratch/gsp"
  git -C "$scratch/gsp" checkout -q "$version"
  (cd "$scratch/gsp" && swift build --product protoc-gen-grpc-swift-2 && swift build --product protoc-gen-swift)
fi
plugins="$scratch/gsp/.build/debug"
out=Sources/BanyanGRPC/Generated
rm -f "$out"/*.swift
protoc -I proto -I /usr/include \
  --plugin=protoc-gen-swift="$plugins/protoc-gen-swift" --plugin=protoc-gen-grpc-swift-2="$plugins/protoc-gen-grpc-swift-2" \
  --swift_out="$out" --swift_opt=Visibility=Public,FileNaming=DropPath \
  --grpc-swift-2_out="$out" --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true,FileNaming=DropPath \
  proto/celestialtree/v1/celestialtree.proto proto/banyan/v1/banyan.proto
echo "gen_grpc: wrote $(ls "$out" | tr '\n' ' ')"
