"""Many hosts: etcd client, placement, cluster-wide quota (issue 16)."""
