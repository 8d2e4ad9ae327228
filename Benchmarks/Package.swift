// swift-tools-version:6.1
// Banyan's benchmarks: a package of their own, so `swift build` of the main package never builds
// package-benchmark or these targets. Run from this directory: `swift package benchmark`.
import PackageDescription

let package = Package(
    name: "BanyanBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // The MallocInterposer trait alone: the default traits (with RuntimeInterposer) do not
        // resolve from the local mirror. Retain/release metrics crash with it; the benchmarks use
        // wall clock, throughput, malloc counts and two custom metrics (README.md).
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
        .package(name: "Banyan", path: ".."),
    ],
    targets: [
        .executableTarget(
            name: "EventLogBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "EventLog", package: "Banyan"),
                .product(name: "LineageQuery", package: "Banyan"),
            ],
            path: "Benchmarks/EventLogBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
