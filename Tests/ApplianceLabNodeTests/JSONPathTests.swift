import Foundation
import Testing

@testable import ApplianceLabNode

/// kubectl's `-o jsonpath=` for keys with dots (found by the lab tests: `nvidia\.com/gpu` read nothing).
@Suite("kubectl jsonpath")
struct JSONPathTests {
    let node: [String: Any] = [
        "metadata": ["labels": ["kubernetes.io/hostname": "gpu-1", "plain": "x"]],
        "status": ["allocatable": ["nvidia.com/gpu": "8", "cpu": "64"]],
    ]

    @Test func escapedDotsAndQuotedKeysNameOneField() {
        #expect(JSONPath.render("{.status.allocatable.nvidia\\.com/gpu}", node) == "8")
        #expect(JSONPath.render("{.metadata.labels.kubernetes\\.io/hostname}", node) == "gpu-1")
        #expect(JSONPath.render("{.status.allocatable['nvidia.com/gpu']}", node) == "8")
        #expect(JSONPath.render("{.metadata.labels.plain}/{.status.allocatable.cpu}", node) == "x/64")
        #expect(JSONPath.render("{.status.allocatable.nvidia.com/gpu}", node) == "")
    }
}
