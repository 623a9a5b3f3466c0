"""RFC 5769 section 2.1 sample request: the codec's first end-to-end check."""

import stun

SAMPLE_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e207465737420636c69656e74"
    "002400046e0001ff"
    "80290008932ff9b151263b36"
    "000600096576746a3a68367659202020"
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf"
)


def test_sample_request_decodes_and_verifies() -> None:
    msg = stun.decode(SAMPLE_REQUEST)
    assert msg.method == stun.Method.BINDING
    assert msg.cls == stun.Class.REQUEST
    assert msg.get(stun.Attr.USERNAME) == "evtj:h6vY"
    assert msg.check_integrity(stun.short_term_key("VOkJxbRl1RmTxUk/WvJxBt"))
    assert not msg.check_integrity(b"wrong")
    assert msg.check_fingerprint()
