"""Signatures as HrFlow's SDKs make them: every variant of SPEC section 2."""
import base64
import hashlib
import hmac
import itertools

HEADERS = ("HTTP-HRFLOW-SIGNATURE", "HRFLOW-SIGNATURE", "HTTP-RIMINDER-SIGNATURE")


def b64(data, url, pad):
    enc = base64.urlsafe_b64encode(data) if url else base64.b64encode(data)
    return enc.decode() if pad else enc.decode().rstrip("=")


def signed_value(secret, payload, url=True, pad=False, hex_digest=False,
                 over_encoded=False):
    """SIG.PAYLOAD in one variant of alphabet, padding, digest form, input."""
    enc_payload = b64(payload, url, pad)
    signed = enc_payload.encode() if over_encoded else payload
    mac = hmac.new(secret.encode(), signed, hashlib.sha256)
    sig = mac.hexdigest().encode() if hex_digest else mac.digest()
    return b64(sig, url, pad) + "." + enc_payload


def variants():
    """Every (url, pad, hex_digest, over_encoded) combination: 16."""
    return list(itertools.product((False, True), repeat=4))


def body_signature(secret, body, form="hex"):
    mac = hmac.new(secret.encode(), body, hashlib.sha256)
    if form == "hex":
        return mac.hexdigest()
    if form == "sha256":
        return "sha256=" + mac.hexdigest()
    return base64.b64encode(mac.digest()).decode()


def event_id(text):
    return hashlib.sha256(text).hexdigest()
