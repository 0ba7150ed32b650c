/// What changes between two bundles, and what an upgrade must send.
public struct BundleDiff: Sendable {
    public struct Change: Sendable {
        public var component: String
        public var artifact: String
        public var old: BundleManifest.Artifact?
        public var new: BundleManifest.Artifact?
        /// Bytes of the new artifact's blobs the old bundle lacks (for an image: only its new layers, config
        /// and manifest), counted here once even when two artifacts share them.
        public var bytesToSend: Int64 = 0
        /// The new artifact's blobs (for an image: manifest, config, layers) and how many the old bundle has.
        public var blobCount = 0
        public var blobsShared = 0
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
        let oldBlobs = old.blobs
        var counted = Set<SHA256Digest>()
        func measured(_ c: Change) -> Change {
            var c = c
            for b in c.new?.allBlobs ?? [] {
                c.blobCount += 1
                if oldBlobs[b.digest] != nil {
                    c.blobsShared += 1
                } else if counted.insert(b.digest).inserted {
                    c.bytesToSend += b.size
                }
            }
            return c
        }
        var oldByKey: [String: (String, BundleManifest.Artifact)] = [:]
        for (c, a) in old.allArtifacts { oldByKey["\(c.name)/\(a.name)"] = (c.name, a) }
        var newKeys = Set<String>()
        for (c, a) in new.allArtifacts {
            let key = "\(c.name)/\(a.name)"
            newKeys.insert(key)
            if let (_, o) = oldByKey[key] {
                if o.sha256 != a.sha256 || o.kind != a.kind || o.roles != a.roles {
                    changed.append(measured(Change(component: c.name, artifact: a.name, old: o, new: a)))
                } else {
                    unchanged += 1
                }
            } else {
                added.append(measured(Change(component: c.name, artifact: a.name, old: nil, new: a)))
            }
        }
        for (c, a) in old.allArtifacts where !newKeys.contains("\(c.name)/\(a.name)") {
            removed.append(Change(component: c.name, artifact: a.name, old: a, new: nil))
        }
        for (d, size) in new.blobs {
            newTotalBytes += size
            if oldBlobs[d] == nil { bytesToSend += size }
        }
    }
}
