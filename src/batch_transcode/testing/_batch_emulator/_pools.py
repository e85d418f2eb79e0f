"""Pool and compute node operations: the ``Pools_*`` and ``Nodes_*`` operationIds.

:class:`PoolOperations` creates, reads, lists, updates, resizes and deletes pools, enables,
disables and evaluates autoscale, and answers List Supported Images and List Pool Node
Counts; :class:`NodeOperations` lists and reads compute nodes and their files. As in the
Azure Batch REST API reference, Pools and Nodes groups
(https://learn.microsoft.com/rest/api/batchservice/pools,
https://learn.microsoft.com/rest/api/batchservice/nodes). Allocating, starting and
removing nodes is the scheduler's work (``_scheduler``): these operations set a pool's
targets and mark it for deletion.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ._errors import BatchServiceError, being_deleted
from ._images import SUPPORTED_IMAGES
from ._model import JSON, iso, now
from ._odata import duration_seconds
from ._rest import Call, FileOperations, Operations, Reply, new_id, replace_properties, update_properties


class PoolOperations(Operations):
    """``Pools_*``: pools, autoscale, supported images, node counts."""

    def op_Pools_CreatePool(self, call: Call) -> Reply:
        with self.state.lock:
            pool_id = new_id(call.body["id"], self.state.pools, "Pool")
            return self._created(self.state.new_pool(pool_id, call.body))

    def op_Pools_GetPool(self, call: Call) -> Reply:
        with self.state.lock:
            return self._get(call, self.state.pool(call.params["poolId"]), "pools")

    def op_Pools_PoolExists(self, call: Call) -> Reply:
        with self.state.lock:
            pool = self.state.pools.get(call.params["poolId"].lower())
            if pool is None:
                return Reply(404, None)
            return Reply(200, None, self._entity_headers(pool))

    def op_Pools_ListPools(self, call: Call) -> Reply:
        return self._list_all(call, self.state.pools, "pools")

    def op_Pools_DeletePool(self, call: Call) -> Reply:
        with self.state.lock:
            pool = self.state.pool(call.params["poolId"])
            if pool.state == "deleting":
                raise being_deleted("Pool")
            self.state.begin_pool_delete(pool)
            return Reply(202, None)

    def op_Pools_ResizePool(self, call: Call) -> Reply:
        body = call.body or {}
        with self.state.lock:
            pool = self.state.writable_pool(call.params["poolId"])
            if pool.spec.get("enableAutoScale"):
                raise BatchServiceError(
                    409,
                    "OperationNotValidOnPool",
                    "The specified operation is not valid on the pool.",
                    {"Reason": "The pool has auto scaling enabled"},
                )
            if pool.allocation_state != "steady":
                raise BatchServiceError(409, "PoolBeingResized", "The specified pool is being resized")
            if "resizeTimeout" in body:
                duration_seconds(body["resizeTimeout"], "resizeTimeout")
            self.state.resize(
                pool,
                int(body.get("targetDedicatedNodes", pool.target_dedicated)),
                int(body.get("targetLowPriorityNodes", pool.target_low_priority)),
            )
            return self._reply(202, pool)

    def op_Pools_StopPoolResize(self, call: Call) -> Reply:
        with self.state.lock:
            pool = self.state.writable_pool(call.params["poolId"])
            self.state.stop_resize(pool)
            return self._reply(202, pool)

    def op_Pools_UpdatePool(self, call: Call) -> Reply:
        body = call.body or {}
        with self.state.lock:
            pool = self.state.writable_pool(call.params["poolId"])
            update_properties(pool.spec, body)
            return self._touched(200, pool)

    def op_Pools_ReplacePoolProperties(self, call: Call) -> Reply:
        body = call.body or {}
        with self.state.lock:
            pool = self.state.writable_pool(call.params["poolId"])
            replace_properties(
                pool.spec,
                body,
                ("startTask", "metadata", "applicationPackageReferences", "targetNodeCommunicationMode"),
            )
            return self._touched(204, pool)

    def op_Pools_EnablePoolAutoScale(self, call: Call) -> Reply:
        body = call.body or {}
        with self.state.lock:
            pool = self.state.writable_pool(call.params["poolId"])
            formula = body.get("autoScaleFormula") or pool.spec.get("autoScaleFormula")
            if not formula:
                raise BatchServiceError(
                    400, "InvalidAutoScalingSettings", "The specified auto-scaling settings are not valid."
                )
            pool.spec["enableAutoScale"] = True
            pool.spec["autoScaleFormula"] = formula
            if "autoScaleEvaluationInterval" in body:
                pool.spec["autoScaleEvaluationInterval"] = body["autoScaleEvaluationInterval"]
            pool.spec.pop("targetDedicatedNodes", None)
            pool.spec.pop("targetLowPriorityNodes", None)
            self.state.changed.notify_all()
            return self._touched(200, pool)

    def op_Pools_DisablePoolAutoScale(self, call: Call) -> Reply:
        with self.state.lock:
            pool = self.state.writable_pool(call.params["poolId"])
            pool.spec["enableAutoScale"] = False
            return self._touched(200, pool)

    def op_Pools_EvaluatePoolAutoScale(self, call: Call) -> Reply:
        body = call.body or {}
        with self.state.lock:
            pool = self.state.writable_pool(call.params["poolId"])
            dedicated, low = self.state.evaluate_formula(pool, body.get("autoScaleFormula", ""))
            run = {
                "odata.metadata": (
                    f"{self.state.endpoint}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.AutoScaleRun"
                ),
                "timestamp": iso(now()),
                "results": f"$TargetDedicatedNodes={dedicated};$TargetLowPriorityNodes={low};"
                "$NodeDeallocationOption=requeue",
            }
            return self._reply(200, pool, run)

    def op_Pools_ListSupportedImages(self, call: Call) -> Reply:
        return self._list(call, copy.deepcopy(SUPPORTED_IMAGES), "supportedimages", "/supportedimages")

    def op_Pools_ListPoolNodeCounts(self, call: Call) -> Reply:
        states = [
            "creating", "idle", "offline", "preempted", "rebooting", "reimaging", "running", "starting",
            "startTaskFailed", "leavingPool", "unknown", "unusable", "waitingForStartTask", "deallocated",
            "deallocating", "upgradingOS",
        ]  # fmt: skip
        with self.state.lock:
            docs = []
            for pool in self.state.pools.values():
                counts: dict[str, JSON] = {}
                for kind, dedicated in (("dedicated", True), ("lowPriority", False)):
                    c: JSON = dict.fromkeys(states, 0)
                    for n in pool.nodes.values():
                        if n.dedicated == dedicated:
                            key = next((s for s in states if s.lower() == n.state.lower()), "unknown")
                            c[key] += 1
                    c["total"] = sum(v for v in c.values())
                    counts[kind] = c
                docs.append({"poolId": pool.id, **counts})
        return self._list(call, docs, "poolnodecounts", "/nodecounts")


class NodeOperations(FileOperations):
    """``Nodes_*``: compute nodes and the files on them."""

    op_Nodes_GetNodeFile = FileOperations.get_file
    op_Nodes_GetNodeFileProperties = FileOperations.get_file_properties
    op_Nodes_DeleteNodeFile = FileOperations.delete_file
    op_Nodes_ListNodeFiles = FileOperations.list_files

    def op_Nodes_ListNodes(self, call: Call) -> Reply:
        with self.state.lock:
            pool = self.state.pool(call.params["poolId"])
            docs = [n.to_json(self.state.endpoint, pool) for n in pool.nodes.values()]
        return self._list(call, docs, "nodes", f"/pools/{pool.id}/nodes")

    def op_Nodes_GetNode(self, call: Call) -> Reply:
        with self.state.lock:
            pool = self.state.pool(call.params["poolId"])
            node = self.state.node(pool, call.params["nodeId"])
            return Reply(200, self._element(call, node.to_json(self.state.endpoint, pool), "nodes"))

    def _files(self, call: Call) -> tuple[Path, str]:
        pool = self.state.pool(call.params["poolId"])
        node = self.state.node(pool, call.params["nodeId"])
        return node.root, f"/pools/{pool.id}/nodes/{node.id}/files"
