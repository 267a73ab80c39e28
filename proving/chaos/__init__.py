"""The seeded chaos soak (`penpay chaos`): traffic and faults through every PenPay process, then
proof that nothing was lost or paid twice.

schedule.py  the seeded plan (users, transactions, faults): same seed, same plan
servers.py   the soak's private mariadbd and redis-server, which the faults kill and restart
tcpcut.py    a TCP proxy that cuts a server it does not own (a URL given to the soak)
population.py the users, written through the product's repositories, and their access tokens
client.py    the gRPC API client: idempotency keys, retries with the same key
driver.py    the traffic: each transaction's scenario set up at the simulators, then the API calls
faults.py    injecting each fault, and the supervisor that restarts what died by itself
report.py    the verdict: the invariants, from the consistency checker and the simulators' books
soak.py      one soak, start to verdict
"""
