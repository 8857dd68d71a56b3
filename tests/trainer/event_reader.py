# An independent reader of TensorBoard event files for the metrics tests: it decodes the TFRecord
# framing, checks both masked CRC-32C values with its own table-driven CRC (Castagnoli), parses the
# Event protobuf by hand (varints, wire types) and prints one JSON object per record. Exits 1 with a
# message on the first framing or checksum error.
import json, struct, sys

POLY = 0x82F63B78  # Castagnoli, reflected
TABLE = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)

def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i

def fields(buf):
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            size, i = varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wire)
        yield number, wire, value

def event(data):
    out = {"wall_time": 0.0, "step": 0}
    for number, wire, value in fields(data):
        if number == 1 and wire == 1:
            out["wall_time"] = struct.unpack("<d", value)[0]
        elif number == 2 and wire == 0:
            out["step"] = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 3 and wire == 2:
            out["file_version"] = value.decode()
        elif number == 5 and wire == 2:
            out["values"] = []
            for vnumber, vwire, entry in fields(value):
                assert vnumber == 1 and vwire == 2
                tag, bits = "", 0  # proto3 leaves out defaults: simple_value 0.0 is absent
                for enumber, ewire, evalue in fields(entry):
                    if enumber == 1 and ewire == 2:
                        tag = evalue.decode()
                    elif enumber == 2 and ewire == 5:
                        bits = struct.unpack("<I", evalue)[0]
                out["values"].append({"tag": tag, "bits": bits})
        elif number == 7 and wire == 2:
            status = 0
            for snumber, swire, svalue in fields(value):
                if snumber == 1 and swire == 0:
                    status = svalue
            out["session_status"] = status
    return out

assert crc32c(b"123456789") == 0xE3069283, "reader CRC-32C self-check"
data = open(sys.argv[1], "rb").read()
i = 0
while i < len(data):
    if len(data) - i < 12:
        sys.exit("truncated header at byte %d" % i)
    header = data[i:i + 8]
    (length,) = struct.unpack("<Q", header)
    (length_crc,) = struct.unpack("<I", data[i + 8:i + 12])
    if length_crc != masked(header):
        sys.exit("bad length crc at byte %d" % i)
    body = data[i + 12:i + 12 + length]
    if len(body) != length or len(data) < i + 16 + length:
        sys.exit("truncated record at byte %d" % i)
    (body_crc,) = struct.unpack("<I", data[i + 12 + length:i + 16 + length])
    if body_crc != masked(body):
        sys.exit("bad data crc at byte %d" % i)
    print(json.dumps(event(body)))
    i += 16 + length
