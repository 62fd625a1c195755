"""A simulated social network that speaks the VK and OK APIs' JSON.

``world`` is the plain in-memory model (groups, members, posts, likes, reposts,
comments); ``vk_api`` and ``ok_api`` answer API methods from it as the real
networks do (paging, errors, signatures); ``server`` adds what a real server
enforces (tokens, rate limits, injected faults, counters); ``app`` is the thin
aiohttp layer, with a control API for tests and the demo.
"""
