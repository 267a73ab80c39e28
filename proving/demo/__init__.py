"""`penpay demo`: a scripted journey over the HTTP bridge, as a frontend would walk it.

    from proving.demo import Endpoints, JourneyOptions, run_journey
    result = await run_journey(Endpoints(bridge_url, deriv_control_url, mpesa_url), JourneyOptions())

Modules: journey (the steps, the result's figures), bridge (cookies + CSRF client, DemoFailed),
simulators (the Deriv and Daraja simulators' control APIs), report (balances and ledger as text),
own_stack (an EmbeddedStack on free ports when no stack answers).
"""

from proving.demo.bridge import DemoFailed
from proving.demo.journey import Endpoints, JourneyOptions, JourneyResult, run_journey
from proving.demo.report import render

__all__ = ["DemoFailed", "Endpoints", "JourneyOptions", "JourneyResult", "render", "run_journey"]
