"""Inspection of a tracevaultd data dir and log: the catalog's blocks, the block files (names
and paths), the tmp dir, what is in quarantine and why, and the log lines about one segment."""
import os


def catalog_blocks(data_dir):
    """{block_id: segment_id} from DATA/catalog.db (ids as unsigned 64-bit)."""
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "catalog.db"), uri=True,
                         timeout=10)
    try:
        rows = db.execute("SELECT block_id, segment_id FROM blocks").fetchall()
    finally:
        db.close()
    return {b & (2**64 - 1): s & (2**64 - 1) for b, s in rows}


def block_name(segment_id, block_id):
    """The name of a committed block's file in DATA/blocks (server/store_uring.h)."""
    return "%016x-%016x.tvb" % (segment_id, block_id)


def block_files(data_dir):
    """Block ids of the files in DATA/blocks (names are <16hex segment>-<16hex block>.tvb)."""
    out = set()
    for name in os.listdir(os.path.join(data_dir, "blocks")):
        assert name.endswith(".tvb") and len(name) == 37 and name[16] == "-", \
            "unexpected file blocks/%s" % name
        out.add(int(name[17:33], 16))
    return out


def block_path(data_dir, block_id):
    """The path of block_id's file in DATA/blocks, whatever its segment (exactly one)."""
    found = [n for n in os.listdir(os.path.join(data_dir, "blocks"))
             if n.endswith("-%016x.tvb" % block_id)]
    assert len(found) == 1, "block %016x: files %r" % (block_id, found)
    return os.path.join(data_dir, "blocks", found[0])


def quarantined(data_dir):
    """{name: reason's first line} of DATA/quarantine (empty when it does not exist)."""
    d = os.path.join(data_dir, "quarantine")
    if not os.path.isdir(d):
        return {}
    out = {}
    for name in os.listdir(d):
        if name.endswith(".reason"):
            continue
        with open(os.path.join(d, name + ".reason")) as f:
            out[name] = f.readline().rstrip("\n")
    return out


def tmp_files(data_dir):
    return sorted(os.listdir(os.path.join(data_dir, "tmp")))


def segment_log_lines(log, segment_id):
    """The server log lines about one segment ('segment <16hex> ...')."""
    tag = "segment %016x " % segment_id
    return [line for line in log.splitlines() if line.startswith(tag)]
