"""The etcd client's pure parts: key ranges, txn JSON, reply and error parsing."""

from __future__ import annotations

import base64
import json

from hypothesis import given
from hypothesis import strategies as st

from albatross_py.cluster import etcd as E
from albatross_py.cluster import kv


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


@given(
    st.binary(min_size=1, max_size=3),
    st.binary(max_size=5),
    st.booleans(),
)
def test_prefix_end_bounds_exactly_the_prefix(prefix: bytes, tail: bytes, glue: bool) -> None:
    key = prefix + tail if glue else tail
    end = E.prefix_end(prefix)
    inside = prefix <= key and (end == b"\0" or key < end)
    assert inside == key.startswith(prefix)


def test_prefix_end_cases() -> None:
    assert E.prefix_end(b"a/") == b"a0"
    assert E.prefix_end(b"a\xff") == b"b"
    assert E.prefix_end(b"\xff\xff") == b"\0"
    assert E.prefix_end(b"") == b"\0"


def test_txn_json_is_the_gateway_shape() -> None:
    txn = E.Txn(
        (E.absent("k"), E.mod_revision_is("m", 7), E.value_is("v", b"\x00")),
        (E.put("k", "x", lease=42), E.delete("p/", prefix=True)),
        (E.get("k"),),
    )
    assert json.loads(json.dumps(txn.to_json())) == {
        "compare": [
            {"key": b64(b"k"), "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
            {"key": b64(b"m"), "target": "MOD", "result": "EQUAL", "mod_revision": "7"},
            {"key": b64(b"v"), "target": "VALUE", "result": "EQUAL", "value": b64(b"\x00")},
        ],
        "success": [
            {"request_put": {"key": b64(b"k"), "value": b64(b"x"), "lease": "42"}},
            {"request_delete_range": {"key": b64(b"p/"), "range_end": b64(b"p0")}},
        ],
        "failure": [{"request_range": {"key": b64(b"k")}}],
    }


def test_failed_txn_has_no_succeeded_field() -> None:
    reply = {
        "header": {"revision": "12"},
        "responses": [
            {
                "response_range": {
                    "header": {"revision": "12"},
                    "kvs": [
                        {
                            "key": b64(b"k"),
                            "create_revision": "3",
                            "mod_revision": "9",
                            "version": "2",
                            "value": b64(b"v"),
                            "lease": "5",
                        }
                    ],
                    "count": "1",
                }
            }
        ],
    }
    r = E.txn_result(reply)
    assert not r.succeeded and r.revision == 12
    (rng,) = r.responses
    assert isinstance(rng, E.RangeResult)
    assert rng.kvs == (E.KeyValue(b"k", b"v", 3, 9, 2, 5),)
    assert E.txn_result({"header": {"revision": "13"}, "succeeded": True}).succeeded


def test_watch_event_type_absent_means_put() -> None:
    put = kv.event_of_json({"kv": {"key": b64(b"a"), "mod_revision": "4", "value": b64(b"1")}})
    gone = kv.event_of_json({"type": "DELETE", "kv": {"key": b64(b"a"), "mod_revision": "5"}})
    assert (put.type, put.kv.value, put.kv.mod_revision) == ("PUT", b"1", 4)
    assert (gone.type, gone.kv.value, gone.prev_kv) == ("DELETE", b"", None)


def test_errors_name_method_code_and_message() -> None:
    body = json.dumps(
        {"error": "etcdserver: no leader", "message": "etcdserver: no leader", "code": 14}
    )
    e = E._error_of("kv/put", 503, body, "https://m1")
    assert (e.code, e.retryable) == (14, True)
    assert str(e) == "etcd kv/put at https://m1: etcdserver: no leader (code 14)"
    nf = E._error_of("kv/put", 404, json.dumps({"message": "lease not found", "code": 5}), "")
    assert (nf.code, nf.retryable, nf.message) == (5, False, "lease not found")
    compacted = E._error_of(
        "kv/range",
        400,
        json.dumps(
            {"error": "x", "message": "mvcc: required revision has been compacted", "code": 11}
        ),
        "",
    )
    assert isinstance(compacted, E.Compacted)
    garbage = E._error_of("kv/range", 502, "<html>bad gateway</html>", "")
    assert garbage.code == 2 and "HTTP 502" in garbage.message and not garbage.retryable
    stream = E._error_of("watch", 200, json.dumps({"error": {"grpc_code": 14, "message": "x"}}), "")
    assert stream.code == 14 and stream.retryable
