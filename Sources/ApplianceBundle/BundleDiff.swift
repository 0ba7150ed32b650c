/// What changes between two bundles, and what an upgrade must send.
public struct BundleDiff: Sendable {
    public struct Change: Sendable {
        public var component: String
        public var artifact: String
        public var old: BundleManifest.Artifact?
        public var new: BundleManifest.Artifact?
    }

    public var fromVersion: String
    public var toVersion: String
    public var added: [Change] = []
    public var removed: [Change] = []
    public var changed: [Change] = []
    public var unchanged = 0
    /// Bytes of blobs the new bundle has that the old one does not: what staging an upgrade sends per node.
    public var bytesToSend: Int64 = 0
    public var newTotalBytes: Int64 = 0
    /// Whether the new bundle declares it may upgrade from the old version.
    public var upgradeAllowed: Bool

    public init(old: BundleManifest, new: BundleManifest) {
        fromVersion = old.version
        toVersion = new.version
        upgradeAllowed = new.upgradeFrom.contains(old.version)
        var oldByKey: [String: (String, BundleManifest.Artifact)] = [:]
        for (c, a) in old.allArtifacts { oldByKey["\(c.name)/\(a.name)"] = (c.name, a) }
        var newKeys = Set<String>()
        for (c, a) in new.allArtifacts {
            let key = "\(c.name)/\(a.name)"
            newKeys.insert(key)
            if let (_, o) = oldByKey[key] {
                if o.sha256 != a.sha256 || o.kind != a.kind || o.roles != a.roles {
                    changed.append(Change(component: c.name, artifact: a.name, old: o, new: a))
                } else {
                    unchanged += 1
                }
            } else {
                added.append(Change(component: c.name, artifact: a.name, old: nil, new: a))
            }
        }
        for (c, a) in old.allArtifacts where !newKeys.contains("\(c.name)/\(a.name)") {
            removed.append(Change(component: c.name, artifact: a.name, old: a, new: nil))
        }
        let oldBlobs = old.blobs
        for (d, size) in new.blobs {
            newTotalBytes += size
            if oldBlobs[d] == nil { bytesToSend += size }
        }
    }
}
