// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Banyan",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "banyan", targets: ["banyan"]),
        .library(name: "EventLog", targets: ["EventLog"]),
        .library(name: "LineageQuery", targets: ["LineageQuery"]),
        .library(name: "BanyanClient", targets: ["BanyanClient"]),
        .library(name: "BanyanServer", targets: ["BanyanServer"]),
        .library(name: "Workflow", targets: ["Workflow"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    ],
    targets: [
        // The C boundary: modulemap + shim.h only. Imported by EventLog/Storage/RocksDB/ alone.
        .systemLibrary(name: "CRocksDB", providers: [.apt(["librocksdb-dev"])]),
        // zstd streams for .jsonl.zst imports and (later) snapshot archives.
        .systemLibrary(name: "CZstd", providers: [.apt(["libzstd-dev"])]),
        .target(
            name: "EventLog",
            dependencies: [
                "CRocksDB",
                "CZstd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "LineageQuery", dependencies: ["EventLog", "BanyanClient"]),
        .target(
            name: "BanyanClient",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "BanyanServer",
            dependencies: [
                "EventLog",
                "LineageQuery",
                "BanyanClient",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            // The dashboard's files (docs/DASHBOARD.md), compiled into the binary as byte arrays.
            resources: [.embedInCode("UI/Assets")]
        ),
        // gRPC beside the HTTP API (docs/CLIENTS.md): CelestialTree's Emit and the native
        // banyan.v1 service, over BanyanServer's operations. Generated/ is protoc's output for
        // proto/ (tools/gen_grpc.sh), committed so builds need no protoc plugin.
        .target(
            name: "BanyanGRPC",
            dependencies: [
                "BanyanServer", "EventLog",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        // The workflow engine: a client of the log, through BanyanClient only (never EventLog).
        .target(
            name: "Workflow",
            dependencies: [
                "BanyanClient", .product(name: "Yams", package: "Yams"), .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]),
        // The workflow REST API (/v1/workflows, /v1/runs): the engine's routes, served by
        // `serve --workflows` and `workflow engine --listen`.
        .target(
            name: "WorkflowServer",
            dependencies: [
                "Workflow", "BanyanServer", "BanyanClient", "EventLog",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]),
        .executableTarget(
            name: "banyan",
            dependencies: [
                "EventLog",
                "LineageQuery",
                "BanyanClient",
                "BanyanServer",
                "BanyanGRPC",
                "Workflow",
                "WorkflowServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A workflow written in Swift (docs/WORKFLOWS.md), run by the integration tests.
        .executableTarget(name: "banyan-workflow-example", dependencies: ["Workflow", "BanyanClient"], path: "examples/swift"),
        // Temporary stores and seeded randomness for the test targets.
        .target(name: "TestSupport", dependencies: ["EventLog"], path: "Tests/TestSupport"),
        .testTarget(name: "EventLogTests", dependencies: ["EventLog", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "LineageQueryTests", dependencies: ["LineageQuery", "EventLog"]),
        .testTarget(name: "WorkflowTests", dependencies: ["Workflow", "BanyanClient", "TestSupport"]),
        .testTarget(
            name: "BanyanGRPCTests",
            dependencies: ["BanyanGRPC", "BanyanServer", "EventLog", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .testTarget(
            name: "BanyanServerTests",
            dependencies: [
                "BanyanServer", "EventLog", "BanyanClient", "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ]
)

for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    target.swiftSettings = settings
}
