"""The server wing: what serves a domain.

- ``service``: the NetInfo semantics of every procedure (pure);
- ``database``: ``Database``, the owner of one open domain (commit, changes, snapshots);
- ``netinfod``: netinfod's RPC server (``Dispatcher``, TCP and UDP endpoints);
- ``rpc``: the small RPC server the binder's programs use;
- ``nibindd``: nibindd (NIBIND, the embedded portmapper, child netinfods);
- ``replicator``: master → clone replication on the network;
- ``auth``, ``quota``, ``peers``, ``templates``, ``proctitle``: authentication, the
  anonymous quota, the bounds on peers, new-domain layouts, process names.

It uses the client wing (a server asks others: parent search, replication), the storage
wing and the wire; nothing below imports it (``tests/test_layers.py``).
"""
