"""Servicers: decode the request, call the application, encode the answer. Nothing else.

The caller's identity comes from the access token (penpay_api.context), never from a request
field; errors are raised as they are and mapped to statuses by the interceptors.
"""
