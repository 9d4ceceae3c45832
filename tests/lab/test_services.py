"""The lab's DNS and NTP answers, byte for byte against the RFCs' layouts."""

from __future__ import annotations

import socket
import struct

from microseg.lab.services import dns_answer, dns_query, ntp_answer, ntp_request


def test_a_dns_query_gets_one_a_record_with_its_id_and_question():
    query = dns_query("web01.lab", 0x1234)
    answer = dns_answer(query)
    assert answer is not None
    identifier, flags, questions, answers = struct.unpack_from("!HHHH", answer)
    assert (identifier, flags, questions, answers) == (0x1234, 0x8180, 1, 1)
    assert answer[12 : len(query)] == query[12:]  # the question echoed (RFC 1035 4.1.2)
    assert answer[-4:] == socket.inet_aton("10.100.99.51")


def test_responses_and_truncated_queries_get_no_answer():
    query = dns_query("web01.lab", 7)
    assert dns_answer(query[:-3]) is None
    assert dns_answer(query[:2] + b"\x81\x80" + query[4:]) is None
    assert dns_answer(b"\0" * 5) is None


def test_ntp_server_reply_carries_the_client_transmit_time_as_origin():
    request = ntp_request()[:40] + b"ORIGINTS"
    reply = ntp_answer(request, 1_700_000_000.5)
    assert reply is not None and len(reply) == 48
    assert reply[0] & 0x07 == 4 and reply[1] == 1  # server mode, stratum 1
    assert reply[24:32] == b"ORIGINTS"  # origin = client's transmit (RFC 5905 7.3)
    assert struct.unpack_from("!II", reply, 40) == (1_700_000_000 + 2208988800, 2**31)
    assert ntp_answer(bytes([0x24]) + bytes(47), 0) is None  # a server packet is not a request
