import ApplianceCluster
import ApplianceModel
import Foundation

/// The registry PKI kept in the cluster's state directory on the admin host (`pki/`, keys 0600): a CA made
/// once per cluster, and a server certificate per registry node, issued again only when its names change or
/// it nears expiry, so a re-run writes nothing new on the nodes.
struct InstallPKI {
    let directory: URL

    init(stateDirectory: URL) {
        directory = stateDirectory.appendingPathComponent("pki")
    }

    func authority(cluster: String) throws -> RegistryPKI.Authority {
        let cert = directory.appendingPathComponent("registry-ca.crt")
        let key = directory.appendingPathComponent("registry-ca.key")
        if let c = try? String(contentsOf: cert, encoding: .utf8), let k = try? String(contentsOf: key, encoding: .utf8)
        {
            return try RegistryPKI.readAuthority(certificatePEM: c, privateKeyPEM: k)
        }
        let ca = try RegistryPKI.issueAuthority(clusterName: cluster, now: Date())
        try write(ca.privateKeyPEM, to: key, mode: 0o600)
        try write(ca.certificatePEM, to: cert, mode: 0o644)
        return ca
    }

    /// The registry's server certificate and key (PEM) for `names`.
    func serverCertificate(names: [String], authority: RegistryPKI.Authority) throws -> (cert: String, key: String) {
        let cert = directory.appendingPathComponent("registry.crt")
        let key = directory.appendingPathComponent("registry.key")
        if let c = try? String(contentsOf: cert, encoding: .utf8),
            let k = try? String(contentsOf: key, encoding: .utf8),
            RegistryPKI.check(
                serverCertificatePEM: c, keyPEM: k, caPEM: authority.certificatePEM, names: names, now: Date()
            ).isEmpty
        {
            return (c, k)
        }
        let issued = try RegistryPKI.issueServerCertificate(names: names, authority: authority, now: Date())
        try write(issued.privateKeyPEM, to: key, mode: 0o600)
        try write(issued.certificatePEM, to: cert, mode: 0o644)
        return (issued.certificatePEM, issued.privateKeyPEM)
    }

    private func write(_ text: String, to url: URL, mode: Int) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let tmp = url.appendingPathExtension("new")
        FileManager.default.createFile(atPath: tmp.path, contents: nil, attributes: [.posixPermissions: mode])
        try Data(text.utf8).write(to: tmp)
        guard rename(tmp.path, url.path) == 0 else {
            throw ClusterError.io(path: url.path, reason: String(cString: strerror(errno)))
        }
    }
}
