import Foundation

/// The CloudNativePG operator's handling of a `postgresql.cnpg.io/v1` `Cluster`, as the lab's API server
/// stand-in runs it (`APIServerStandin.cnpgOperator`), in outline:
///
/// - the application user's Secret `<cluster>-app` (`kubernetes.io/basic-auth`) with CNPG's keys: `username`,
///   `password` (generated, 64 characters), `host` (`<cluster>-rw`), `port`, `dbname`, `uri`, `jdbc-uri`,
///   `pgpass`; the database and owner from `spec.bootstrap.initdb` (`app`/`app` by default; the owner defaults
///   to the database's name, as CNPG does);
/// - the Services `<cluster>-rw` (the primary), `<cluster>-ro` (replicas), `<cluster>-r` (any instance), port
///   5432, selecting the instances by CNPG's labels;
/// - instance pods `<cluster>-1` … `<cluster>-N`, one at a time (the next once the previous is Ready; `-1` is
///   the primary), each with the Cluster's `imageName`, `resources` and placement (`affinity.nodeSelector`,
///   `affinity.tolerations`, `affinity.nodeAffinity`), the instance manager's command
///   (`/controller/manager instance run`), owned by the Cluster;
/// - status: `instances`, `readyInstances`, `instanceNames`, `currentPrimary`, `writeService`, `readService`,
///   `phase` ("Cluster in healthy state" once every instance is Ready, "Setting up primary" before),
///   condition `Ready`.
///
/// What runs an instance is the kubelet of its node (`CNPGInstanceModel`): a real PostgreSQL server. Not
/// modelled: the `-initdb` Job (the instance does its own initdb), persistent volume claims (the data directory
/// is on the node's disk), the superuser secret, TLS certificates, failover, backups, poolers, the other CRDs.
public enum CNPGModel {
    public static let resource = KResource.clusters
    public static let group = "postgresql.cnpg.io"
    public static let managerCommand = ["/controller/manager", "instance", "run"]
    public static let port = 5432
    /// The operator Deployment's pod label (the chart's `app.kubernetes.io/name`).
    public static let operatorLabel = "cloudnative-pg"

    public static let clusterLabel = "cnpg.io/cluster"
    public static let instanceRoleLabel = "cnpg.io/instanceRole"
    public static let podRoleLabel = "cnpg.io/podRole"
    public static let instanceNameLabel = "cnpg.io/instanceName"

    public static func database(_ cluster: KObject) -> (database: String, owner: String) {
        let initdb = K.get(cluster, "spec.bootstrap.initdb") as? KObject ?? [:]
        let db = (initdb["database"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? "app"
        let owner = (initdb["owner"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? db
        return (db, owner)
    }

    static func ownerReference(_ cluster: KObject) -> KObject {
        [
            "apiVersion": "\(group)/v1", "kind": "Cluster", "name": K.name(cluster),
            "uid": K.meta(cluster)["uid"] as? String ?? "", "controller": true, "blockOwnerDeletion": true,
        ]
    }

    /// A password as CNPG generates one (64 characters of letters and digits).
    public static func generatePassword() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        var rng = SystemRandomNumberGenerator()
        return String((0..<64).map { _ in alphabet[Int(rng.next(upperBound: UInt64(alphabet.count)))] })
    }

    /// The `<cluster>-app` Secret (values base64-encoded in `data`, as the API stores them).
    public static func appSecret(_ cluster: KObject, password: String) -> KObject {
        let name = K.name(cluster), ns = K.namespace(cluster)
        let (db, owner) = database(cluster)
        let host = "\(name)-rw"
        let fields: [String: String] = [
            "username": owner, "user": owner, "password": password, "host": host, "port": "\(port)", "dbname": db,
            "uri": "postgresql://\(owner):\(password)@\(host).\(ns):\(port)/\(db)",
            "jdbc-uri": "jdbc:postgresql://\(host).\(ns):\(port)/\(db)?password=\(password)&user=\(owner)",
            "pgpass": "\(host):\(port):\(db):\(owner):\(password)\n",
        ]
        return [
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": [
                "name": "\(name)-app", "namespace": ns,
                "labels": [clusterLabel: name, "cnpg.io/reload": "true", "cnpg.io/userType": "app"],
                "ownerReferences": [ownerReference(cluster)],
            ] as KObject,
            "data": fields.mapValues { Data($0.utf8).base64EncodedString() },
        ]
    }

    public static func services(_ cluster: KObject) -> [KObject] {
        let name = K.name(cluster), ns = K.namespace(cluster)
        let selectors: [(String, [String: String])] = [
            ("rw", [clusterLabel: name, instanceRoleLabel: "primary"]),
            ("ro", [clusterLabel: name, instanceRoleLabel: "replica"]),
            ("r", [clusterLabel: name, podRoleLabel: "instance"]),
        ]
        return selectors.map { suffix, selector in
            [
                "apiVersion": "v1", "kind": "Service",
                "metadata": [
                    "name": "\(name)-\(suffix)", "namespace": ns, "labels": [clusterLabel: name],
                    "ownerReferences": [ownerReference(cluster)],
                ] as KObject,
                "spec": [
                    "type": "ClusterIP", "selector": selector,
                    "ports": [["name": "postgres", "port": port, "protocol": "TCP", "targetPort": port]],
                ] as KObject,
            ]
        }
    }

    /// Instance pod `<cluster>-<ordinal>` (1 is the primary).
    public static func instancePod(_ cluster: KObject, ordinal: Int) -> KObject {
        let name = K.name(cluster), ns = K.namespace(cluster)
        let podName = "\(name)-\(ordinal)"
        let role = ordinal == 1 ? "primary" : "replica"
        let affinity = K.spec(cluster)["affinity"] as? KObject ?? [:]
        var spec: KObject = [
            "hostname": podName,
            "containers": [
                [
                    "name": "postgres", "image": K.spec(cluster)["imageName"] as? String ?? "",
                    "command": managerCommand + ["--log-level=info"],
                    "env": [
                        ["name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"],
                        ["name": "POD_NAME", "value": podName], ["name": "NAMESPACE", "value": ns],
                        ["name": "CLUSTER_NAME", "value": name],
                    ],
                    "ports": [["name": "postgresql", "containerPort": port, "protocol": "TCP"]],
                    "resources": K.spec(cluster)["resources"] as? KObject ?? [:],
                ] as KObject
            ],
            "restartPolicy": "Always",
        ]
        if let selector = affinity["nodeSelector"] as? [String: String], !selector.isEmpty {
            spec["nodeSelector"] = selector
        }
        if let tolerations = affinity["tolerations"] as? [KObject], !tolerations.isEmpty {
            spec["tolerations"] = tolerations
        }
        if let nodeAffinity = affinity["nodeAffinity"] as? KObject {
            spec["affinity"] = ["nodeAffinity": nodeAffinity] as KObject
        }
        return [
            "apiVersion": "v1", "kind": "Pod",
            "metadata": [
                "name": podName, "namespace": ns,
                "labels": [
                    clusterLabel: name, instanceNameLabel: podName, podRoleLabel: "instance", instanceRoleLabel: role,
                    "role": role,
                ],
                "ownerReferences": [ownerReference(cluster)],
            ] as KObject,
            "spec": spec,
        ]
    }

    /// The Cluster's status from its instance pods.
    public static func status(_ cluster: KObject, pods: [KObject], ready: (KObject) -> Bool) -> KObject {
        let name = K.name(cluster)
        let instances = K.spec(cluster)["instances"] as? Int ?? 1
        let names = pods.map(K.name).sorted()
        let readyCount = pods.filter(ready).count
        let healthy = readyCount >= instances
        let phase =
            healthy
            ? "Cluster in healthy state"
            : pods.contains(where: { K.name($0) == "\(name)-1" && ready($0) })
                ? "Creating a new replica" : "Setting up primary"
        return [
            "instances": pods.count, "readyInstances": readyCount, "instanceNames": names,
            "currentPrimary": "\(name)-1", "targetPrimary": "\(name)-1", "writeService": "\(name)-rw",
            "readService": "\(name)-r", "phase": phase, "latestGeneratedNode": pods.count,
            "conditions": [
                [
                    "type": "Ready", "status": healthy ? "True" : "False",
                    "reason": healthy ? "ClusterIsReady" : "ClusterIsNotReady",
                    "message": healthy ? "Cluster is Ready" : "Cluster Is Not Ready",
                ]
            ],
        ]
    }
}
