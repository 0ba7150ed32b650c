#!/bin/sh
# Written by appliance install; a re-run rewrites it, so edit the site file instead.
# keepalived health check for the Kubernetes API virtual IP (kubeadm HA guide).

errorExit() {
    echo "*** $*" 1>&2
    exit 1
}

curl --silent --max-time 2 --insecure https://localhost:8443/ -o /dev/null || errorExit "Error GET https://localhost:8443/"
if ip addr | grep -q "inet 10.0.0.100/"; then
    curl --silent --max-time 2 --insecure https://10.0.0.100:8443/ -o /dev/null || errorExit "Error GET https://10.0.0.100:8443/"
fi
