import Foundation

/// The CloudNativePG operator (`CNPGModel`), run by the controller loop while the `clusters.postgresql.cnpg.io`
/// CRD is stored and the operator's Deployment (pods labelled `app.kubernetes.io/name: cloudnative-pg`) is
/// available, as the real operator runs in that pod. Objects a Cluster owns go with it when it is deleted.
extension APIServerStandin {
    func cnpgOperator() throws {
        let r = CNPGModel.resource
        guard let crd = r.customResourceDefinition, try get(Self.crds, nil, crd) != nil else { return }
        let clusters = try list(r)
        let available = try list(Self.deployments).contains {
            K.labels($0)["app.kubernetes.io/name"] == CNPGModel.operatorLabel
                && (K.status($0)["availableReplicas"] as? Int ?? 0) >= 1
        }
        let pods = try list(Self.pods)
        // Garbage: objects owned by a Cluster that is gone.
        let live = Set(clusters.compactMap { K.meta($0)["uid"] as? String })
        for (resource, items) in [
            (Self.pods, pods), (KResource.services, try list(KResource.services)),
            (KResource.secrets, try list(KResource.secrets)),
        ] {
            for o in items {
                guard let ref = K.controller(o), ref["kind"] as? String == "Cluster",
                    (ref["apiVersion"] as? String ?? "").hasPrefix(CNPGModel.group + "/"),
                    let uid = ref["uid"] as? String, !live.contains(uid)
                else { continue }
                try delete(resource, K.namespace(o), K.name(o))
            }
        }
        guard available else { return }
        for cluster in clusters {
            let ns = K.namespace(cluster), name = K.name(cluster)
            let uid = K.meta(cluster)["uid"] as? String
            if try get(KResource.secrets, ns, "\(name)-app") == nil {
                _ = try create(
                    KResource.secrets, CNPGModel.appSecret(cluster, password: CNPGModel.generatePassword()),
                    namespace: ns)
            }
            for svc in CNPGModel.services(cluster) where try get(KResource.services, ns, K.name(svc)) == nil {
                _ = try create(KResource.services, svc, namespace: ns)
            }
            let instances = max(1, K.spec(cluster)["instances"] as? Int ?? 1)
            var mine = pods.filter { K.namespace($0) == ns && K.controller($0)?["uid"] as? String == uid }
            // Surplus instances go from the top.
            for p in mine {
                let ordinal = Int(K.name(p).dropFirst(name.count + 1)) ?? Int.max
                if ordinal > instances { try delete(Self.pods, ns, K.name(p)) }
            }
            mine.removeAll { (Int(K.name($0).dropFirst(name.count + 1)) ?? Int.max) > instances }
            // One at a time: the next instance once the previous one is Ready.
            for ordinal in 1...instances {
                if let existing = mine.first(where: { K.name($0) == "\(name)-\(ordinal)" }) {
                    if !Self.podReady(existing) { break }
                    continue
                }
                if let created = try create(
                    Self.pods, CNPGModel.instancePod(cluster, ordinal: ordinal), namespace: ns)
                {
                    mine.append(created)
                }
                break
            }
            let st = CNPGModel.status(cluster, pods: mine, ready: Self.podReady)
            if K.json(K.status(cluster)) != K.json(st) {
                try update(r, ns, name) { $0["status"] = st }
            }
        }
    }
}
