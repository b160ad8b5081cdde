#!/usr/bin/env python3
# Writes the seed corpus of fuzz_internal: one valid input per decoder.
#   python3 tests/fuzz/make_internal_seeds.py tests/fuzz/corpus/fuzz_internal
import json, os, struct, sys, zlib

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

def put(name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

def js(obj):
    return json.dumps(obj, separators=(",", ":"))

put("join", js({"group": "group1", "ip": "127.0.0.2", "port": 23000, "http_port": 0,
                "store_path_count": 1, "subdir_count": 256, "upload_priority": 10,
                "version": "depot-0.1", "join_time": 1700000000, "up_time": 1700000100}))
put("join_reply", js({"id": "127.0.0.2:23000"}))
put("heartbeat", js({"id": "127.0.0.2:23000", "paths": [{"total_mb": 1000, "free_mb": 500}],
                     "reserved_mb": 10, "current_write_path": 0, "conn": [1, 1, 1],
                     "counters": [0] * 38, "last_source_update": 0, "repl_state": "active",
                     "binlog_seq": 12,
                     "sync": [{"peer": "127.0.0.3:23000", "synced_until": 1700000000,
                               "lag_records": 0, "lag_seconds": 0, "connected": True}]}))
put("heartbeat_reply", js({"peers": [{"id": "127.0.0.3:23000", "ip": "127.0.0.3",
                                      "port": 23000, "state": 7}]}))
name = b"M00/00/00/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt"
put("sync_record_create", struct.pack(">QQQQccH", 0x0123456789abcdef, 1, 12, 0, b"C", b"\0",
                                      len(name)) + name + b"hello world!")
put("sync_record_meta", struct.pack(">QQQQccH", 0x0123456789abcdef, 2, 3, 5, b"M", b"\0",
                                    len(name)) + name + b"k\x02v")
put("sync_record_delete_gone", struct.pack(">QQQQccH", 7, 3, 0, 0, b"D", b"\x01", len(name)) + name)
put("sync_hello", js({"from": "127.0.0.2:23000", "dump": True}))
put("sync_hello_reply", js({"accepting": True, "applied": {"0123456789abcdef": 17, "0000000000000007": 3}}))
put("dump_request", js({"to": "127.0.1.1:23000"}))
put("list_files", js({"store_path": 0, "dir1": 255, "verify": True}))
put("list_files_reply", js({"files": [[name.decode(), 12, True], ["M00/01/02/x", 0, False]],
                            "deleted": ["M00/00/00/gone.jpg"]}))
put("repair", js({"name": name.decode(), "from_ip": "127.0.0.3", "from_port": 23000}))
# A binlog record: [0xDB, 1, len16, crc32] + seq8 origin8 oseq8 time4 watermark4 op1 flags1 len2 name.
payload = struct.pack(">QQQIIccH", 5, 0x0123456789abcdef, 4, 1700000000, 1699999999, b"C", b"\0",
                      len(name)) + name
put("binlog_record", struct.pack(">BBHI", 0xDB, 1, len(payload), zlib.crc32(payload)) + payload)
# An appender change: the record carries offset8 + length8 after the name.
payload = struct.pack(">QQQIIccH", 6, 0x0123456789abcdef, 5, 1700000000, 1699999999, b"A", b"\0",
                      len(name)) + name + struct.pack(">QQ", 12, 4096)
put("binlog_record_append", struct.pack(">BBHI", 0xDB, 1, len(payload), zlib.crc32(payload)) + payload)
put("sync_record_append", struct.pack(">QQQQccH", 0x0123456789abcdef, 6, 5, 12, b"A", b"\0",
                                      len(name)) + name + b"hello")
# A trunk slot header: magic, version, state, suffix length, 0, the 20 name bytes, slot size,
# suffix (12, NUL-padded), CRC32 of the first 44 bytes.
head = b"DPTK" + bytes([1, 1, 11, 0]) + struct.pack(">IIQI", 0x7f000001, 1700000000,
                                                    0x8800000100000100, 0xdeadbeef) + \
    struct.pack(">I", 512) + b"1234567.jpg".ljust(12, b"\0")[:12]
put("trunk_header", head + struct.pack(">I", zlib.crc32(head)))
