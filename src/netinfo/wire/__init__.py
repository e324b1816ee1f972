"""The wire: what travels between NetInfo's clients and servers, as pure codecs.

- ``xdr``: RFC 4506 packing, every length bounded;
- ``rpc``: RFC 5531 calls and replies, credentials, record marking;
- ``proplist``: NetInfo's ids, proplists and directories (spec §2), and the helpers a
  store answers from its stored bytes;
- ``protocol``: the NETINFO program, its procedures and THE procedure table (spec §4);
- ``readall``: the READALL stream (spec §9.4);
- ``portmap``, ``nibind``: the portmapper's and NIBIND's codecs (spec §6, §7);
- ``limits``: the bounds every directory keeps.

Pure: nothing here opens a socket or a file (``tests/test_layers.py``).
"""
