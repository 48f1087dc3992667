"""Three callbacks an attacker could send to your callback route — a forged URL, a
missing signature, a stale signature — for the examples to show they are refused."""

import time

import aiohttp

from suno_mp4 import sign


async def refusals(url: str, task_id: str, key: str) -> list[int]:
    """A forged URL, a missing signature, a stale signature: what the route answers."""
    body = {"code": 200, "msg": "ok", "data": {"task_id": task_id, "video_url": "http://x/y"}}
    stale = str(int(time.time()) - 3600)
    headers = {
        "X-Webhook-Timestamp": stale,
        "X-Webhook-Signature": sign(key, task_id, stale),
    }
    async with aiohttp.ClientSession() as http:
        answers = []
        for target, sent in ((url[:-4] + "xxxx", {}), (url, {}), (url, headers)):
            async with http.post(target, json=body, headers=sent) as resp:
                answers.append(resp.status)
    return answers
