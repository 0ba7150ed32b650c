import Foundation

/// The NFS CSI driver's controller (`csi-driver-nfs`, `nfs.csi.k8s.io`) as the external provisioner runs it:
/// a claim on a StorageClass of that provisioner gets a directory of its own on the class's export and a
/// PersistentVolume bound to it; a released volume of a `Delete` class loses its directory and its PV.
///
/// The driver must be deployed (its controller Deployment `csi-nfs-controller` available, in any namespace),
/// as the real sidecar runs in that pod. The export is reached where every lab node sees it
/// (`<nfsRoot>/<server><share>`, `LabPaths.nfsRoot`): the lab host's export directory bind-mounted into the
/// nodes, since this kernel has no NFS client or server. The directory operations on it are real.
extension APIServerStandin {
    static let nfsDriver = "nfs.csi.k8s.io"
    static let nfsController = "csi-nfs-controller"

    /// The directory of an export on this node.
    func nfsExportPath(server: String, share: String) -> String {
        nfsRoot + "/" + server + (share.hasPrefix("/") ? share : "/" + share)
    }

    func nfsProvisioner() throws {
        let controllerUp = try list(Self.deployments).contains {
            K.name($0) == Self.nfsController && (K.status($0)["availableReplicas"] as? Int ?? 0) >= 1
        }
        let classes = try list(KResource.storageclasses).filter { $0["provisioner"] as? String == Self.nfsDriver }
        let byName = Dictionary(classes.map { (K.name($0), $0) }, uniquingKeysWith: { a, _ in a })
        let claims = try list(KResource.persistentvolumeclaims)
        let fm = FileManager.default
        let volumes = try list(KResource.persistentvolumes)
        // Provision: a pending claim on an NFS class.
        for pvc in claims where controllerUp && (K.spec(pvc)["volumeName"] as? String ?? "").isEmpty {
            guard let sc = byName[K.spec(pvc)["storageClassName"] as? String ?? ""] else { continue }
            let ns = K.namespace(pvc), name = K.name(pvc)
            // Already provisioned (the claim was written again without its volume name): bind it again.
            if let pv = volumes.first(where: {
                K.get($0, "spec.claimRef.uid") as? String == K.meta(pvc)["uid"] as? String
            }) {
                try update(KResource.persistentvolumeclaims, ns, name) { o in
                    K.set(&o, ["spec", "volumeName"], K.name(pv))
                    o["status"] =
                        [
                            "phase": "Bound", "accessModes": K.spec(pv)["accessModes"] ?? [],
                            "capacity": K.spec(pv)["capacity"] ?? [:],
                        ] as KObject
                }
                continue
            }
            let params = sc["parameters"] as? [String: String] ?? [:]
            let server = params["server"] ?? "", share = params["share"] ?? "/"
            let pvName = "pvc-\(K.meta(pvc)["uid"] as? String ?? UUID().uuidString.lowercased())"
            let export = nfsExportPath(server: server, share: share)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: export, isDirectory: &isDir), isDir.boolValue else {
                try claimEvent(
                    pvc, type: "Warning", reason: "ProvisioningFailed",
                    message:
                        "failed to provision volume with StorageClass \"\(K.name(sc))\": rpc error: code = Internal desc = failed to mount nfs server: mount \(server):\(share): no such export in the lab (the lab host exports only its NFS directory)"
                )
                continue
            }
            do {
                try fm.createDirectory(atPath: export + "/" + pvName, withIntermediateDirectories: false)
                try fm.setAttributes([.posixPermissions: 0o777], ofItemAtPath: export + "/" + pvName)
            } catch CocoaError.fileWriteFileExists {
            } catch {
                try claimEvent(
                    pvc, type: "Warning", reason: "ProvisioningFailed",
                    message: "failed to provision volume with StorageClass \"\(K.name(sc))\": \(error)")
                continue
            }
            let request = K.get(pvc, "spec.resources.requests.storage") as? String ?? "1Gi"
            let modes = K.spec(pvc)["accessModes"] as? [String] ?? ["ReadWriteOnce"]
            let pv: KObject = [
                "metadata": [
                    "name": pvName, "annotations": ["pv.kubernetes.io/provisioned-by": Self.nfsDriver],
                ] as KObject,
                "spec": [
                    "capacity": ["storage": request], "accessModes": modes,
                    "persistentVolumeReclaimPolicy": sc["reclaimPolicy"] as? String ?? "Delete",
                    "storageClassName": K.name(sc), "mountOptions": sc["mountOptions"] as? [String] ?? [],
                    "volumeMode": "Filesystem",
                    "claimRef": [
                        "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": name,
                        "uid": K.meta(pvc)["uid"] as? String ?? "",
                    ] as KObject,
                    "csi": [
                        "driver": Self.nfsDriver, "volumeHandle": "\(server)#\(share.dropFirst())#\(pvName)##",
                        "volumeAttributes": [
                            "server": server, "share": share, "subdir": pvName,
                            "csi.storage.k8s.io/pv/name": pvName, "csi.storage.k8s.io/pvc/name": name,
                            "csi.storage.k8s.io/pvc/namespace": ns,
                        ],
                    ] as KObject,
                ] as KObject,
                "status": ["phase": "Bound"],
            ]
            _ = try create(KResource.persistentvolumes, pv, namespace: nil)
            try update(KResource.persistentvolumeclaims, ns, name) { o in
                K.set(&o, ["spec", "volumeName"], pvName)
                K.set(&o, ["metadata", "annotations", "pv.kubernetes.io/bind-completed"], "yes")
                K.set(&o, ["metadata", "annotations", "volume.kubernetes.io/storage-provisioner"], Self.nfsDriver)
                o["status"] = ["phase": "Bound", "accessModes": modes, "capacity": ["storage": request]] as KObject
            }
            try claimEvent(
                pvc, type: "Normal", reason: "ProvisioningSucceeded",
                message: "Successfully provisioned volume \(pvName)")
        }
        // Release: a volume of this driver whose claim is gone.
        let live = Set(claims.compactMap { K.meta($0)["uid"] as? String })
        for pv in volumes where K.get(pv, "spec.csi.driver") as? String == Self.nfsDriver {
            guard let uid = K.get(pv, "spec.claimRef.uid") as? String, !live.contains(uid) else { continue }
            if K.spec(pv)["persistentVolumeReclaimPolicy"] as? String == "Retain" {
                if K.status(pv)["phase"] as? String != "Released" {
                    try update(KResource.persistentvolumes, nil, K.name(pv)) { $0["status"] = ["phase": "Released"] }
                }
                continue
            }
            guard controllerUp else { continue }
            let attrs = K.get(pv, "spec.csi.volumeAttributes") as? [String: String] ?? [:]
            let dir =
                nfsExportPath(server: attrs["server"] ?? "", share: attrs["share"] ?? "/") + "/"
                + (attrs["subdir"] ?? K.name(pv))
            if fm.fileExists(atPath: dir) { try? fm.removeItem(atPath: dir) }
            try delete(KResource.persistentvolumes, nil, K.name(pv))
        }
    }

    /// A `v1` Event about a claim from the NFS provisioner (one per new message).
    func claimEvent(_ pvc: KObject, type: String, reason: String, message: String) throws {
        let ns = K.namespace(pvc), name = K.name(pvc)
        let known = try list(KResource.events, namespace: ns).contains {
            K.get($0, "involvedObject.name") as? String == name && $0["message"] as? String == message
        }
        if known { return }
        let now = K.timestamp()
        let component = "\(Self.nfsDriver)_\(Self.nfsController)"
        let ev: KObject = [
            "metadata": ["name": "\(name).\(Self.suffix())\(Self.suffix())", "namespace": ns],
            "involvedObject": [
                "kind": "PersistentVolumeClaim", "namespace": ns, "name": name,
                "uid": K.meta(pvc)["uid"] as? String ?? "", "apiVersion": "v1",
            ],
            "reason": reason, "message": message, "type": type, "source": ["component": component],
            "reportingComponent": component, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        ]
        _ = try create(KResource.events, ev, namespace: ns)
    }
}
