// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "appliance",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "appliance", targets: ["appliance"]),
        .executable(name: "appliance-labnode", targets: ["appliance-labnode"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // System libraries (Debian: libarchive-dev, libssl-dev), each with a small shim.h.
        .systemLibrary(
            name: "CArchive", pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(
            name: "CCrypto", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),

        .target(
            name: "ApplianceModel",
            dependencies: [.product(name: "Yams", package: "Yams")]),
        .target(
            name: "ApplianceBundle",
            dependencies: [
                "CArchive", "CCrypto", "ApplianceModel",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "ApplianceCommands",
            dependencies: [
                "ApplianceModel", "ApplianceBundle",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(name: "appliance", dependencies: ["ApplianceCommands"]),

        // Lab stand-ins (nvidia-smi, dcgmi, kubeadm, kubectl...): one multi-call binary installed into lab nodes.
        .target(
            name: "ApplianceLabNode",
            dependencies: ["ApplianceModel", .product(name: "Yams", package: "Yams")],
            exclude: ["README.md"]),
        .executableTarget(name: "appliance-labnode", dependencies: ["ApplianceLabNode"]),

        .testTarget(name: "ApplianceModelTests", dependencies: ["ApplianceModel"]),
        .testTarget(
            name: "ApplianceBundleTests",
            dependencies: ["ApplianceBundle", "ApplianceModel"]),
        .testTarget(
            name: "ApplianceLabNodeTests",
            dependencies: ["ApplianceLabNode", "ApplianceModel", "appliance-labnode"]),
        .testTarget(
            name: "ApplianceCommandsTests",
            dependencies: ["ApplianceCommands"]),
    ],
    swiftLanguageModes: [.v6]
)
