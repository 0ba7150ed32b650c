import ApplianceSSH
import Foundation

/// What a node needs to join: found with kubeadm on a control plane, sent to the joining node on stdin,
/// never logged (`description` hides the values).
public struct JoinSecrets: Sendable, CustomStringConvertible {
    public var endpoint: String
    public var token: String
    public var caCertHash: String
    /// For control-plane joins: the key of the uploaded control-plane certificates.
    public var certificateKey: String?

    public var description: String { "join secrets for \(endpoint) (token and keys hidden)" }
    /// Every value a log or journal must never contain.
    public var values: [String] { [token, caCertHash] + (certificateKey.map { [$0] } ?? []) }
}

/// kubeadm on the nodes: init on the first control plane, join tokens and certificate keys made fresh there
/// when needed (so an install resumed a day later still joins), and joins.
public struct Kubeadm: Sendable {
    public static let kubeletConf = "/etc/kubernetes/kubelet.conf"

    public let first: NodeRunner

    public init(first: NodeRunner) { self.first = first }

    public var api: ClusterAPI { ClusterAPI(runner: first) }

    /// Initialised: the admin kubeconfig exists and the API answers ready.
    public func isInitialized() async throws -> Bool { try await api.isReady() }

    /// `kubeadm init --config FILE --upload-certs`. A node left half-initialised by an interrupted run
    /// (manifests or kubeconfigs written, API not answering) is reset first: it is the only control plane,
    /// nothing has joined it yet.
    public func initialize(config: NodeFile, waitForAPI: Duration = .seconds(60)) async throws {
        try await first.ensure([config])
        let leftover = try await first.succeeds(
            "[ -e /etc/kubernetes/admin.conf ] || [ -e /etc/kubernetes/manifests/kube-apiserver.yaml ]",
            label: "look for an earlier init")
        if leftover {
            // An earlier init may still be coming up: give it the time kubeadm itself would.
            if try await waitForReady(api, timeout: waitForAPI) { return }
            try await first.run("kubeadm reset -f >/dev/null", label: "kubeadm reset of a half-initialised node")
        }
        // kubeadm init prints the join token and certificate key on success: its stdout is dropped.
        try await first.run(
            "kubeadm init --config \(shellQuote(config.path)) --upload-certs > /dev/null", label: "kubeadm init",
            timeout: .seconds(900))
        guard try await waitForReady(api, timeout: waitForAPI) else {
            throw ClusterError.node(
                node: first.name, reason: "kubeadm init finished but the API server does not answer /readyz")
        }
    }

    /// A fresh join command from the first control plane: a new bootstrap token (valid `ttl`) and the CA
    /// pin; for a control plane, the certificates uploaded again with a new key.
    public func joinSecrets(controlPlane: Bool, ttl: String = "2h") async throws -> JoinSecrets {
        let out = try await first.run(
            "kubeadm token create --ttl \(shellQuote(ttl)) --print-join-command", label: "kubeadm token create")
        guard let secrets = Self.parseJoinCommand(out) else {
            throw ClusterError.node(node: first.name, reason: "kubeadm token create printed no join command")
        }
        var result = secrets
        if controlPlane {
            let keyOut = try await first.run(
                "kubeadm init phase upload-certs --upload-certs", label: "kubeadm init phase upload-certs")
            guard let key = Self.parseCertificateKey(keyOut) else {
                throw ClusterError.node(node: first.name, reason: "kubeadm upload-certs printed no certificate key")
            }
            result.certificateKey = key
        }
        return result
    }

    /// Whether `node` has joined: its kubelet kubeconfig exists and the API lists it.
    public func hasJoined(_ node: NodeRunner, listed: Set<String>) async throws -> Bool {
        guard listed.contains(node.name) else { return false }
        return try await node.succeeds("[ -f \(Self.kubeletConf) ]", label: "look for kubelet.conf")
    }

    /// Joins `node` with its join configuration (`config`, secret: written 0600, removed after the join). A
    /// node with kubeadm state from an earlier, unfinished join is reset first.
    public func join(_ node: NodeRunner, config: NodeFile) async throws {
        try await node.write([config])
        let path = shellQuote(config.path)
        try await node.run(
            """
            if [ -e \(Self.kubeletConf) ] || [ -e /etc/kubernetes/manifests/kube-apiserver.yaml ]; then
              kubeadm reset -f >/dev/null 2>&1 || true
            fi
            kubeadm join --config \(path) > /dev/null; rc=$?
            rm -f \(path)
            exit $rc
            """, label: "kubeadm join", timeout: .seconds(900))
    }

    /// Polls `/readyz` until it answers or `timeout` passes.
    public func waitForReady(_ api: ClusterAPI, server: String? = nil, timeout: Duration) async throws -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if try await api.isReady(server: server) { return true }
            if clock.now >= deadline { return false }
            try await Task.sleep(for: .seconds(2))
        }
    }

    /// `kubeadm join ENDPOINT --token T --discovery-token-ca-cert-hash sha256:H` as printed by
    /// `kubeadm token create --print-join-command`.
    static func parseJoinCommand(_ text: String) -> JoinSecrets? {
        guard let line = text.split(separator: "\n").first(where: { $0.contains("kubeadm join") }) else { return nil }
        let words = line.split(separator: " ").map(String.init)
        guard let j = words.firstIndex(of: "join"), j + 1 < words.count else { return nil }
        func value(_ flag: String) -> String? {
            if let i = words.firstIndex(of: flag), i + 1 < words.count { return words[i + 1] }
            return words.first { $0.hasPrefix(flag + "=") }.map { String($0.dropFirst(flag.count + 1)) }
        }
        guard let token = value("--token"), let hash = value("--discovery-token-ca-cert-hash") else { return nil }
        return JoinSecrets(endpoint: words[j + 1], token: token, caCertHash: hash, certificateKey: nil)
    }

    /// The key line after `[upload-certs] Using certificate key:`.
    static func parseCertificateKey(_ text: String) -> String? {
        text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .last { $0.count == 64 && $0.allSatisfy(\.isHexDigit) }
    }
}
