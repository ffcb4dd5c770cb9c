"""The Intelligence plugin loads, serves its three prefixes, and refuses unknown routes with JSON."""

import requests


def test_prefixes_answer_json_404_for_unknown_routes(new_portal):
    portal = new_portal()
    for prefix in ("agents", "vectors", "intelligence"):
        response = requests.get(f"{portal.base}/{prefix}/v1/no-such-route", headers=portal.headers(portal.service), timeout=30)
        assert response.status_code == 404, (prefix, response.status_code, response.text)
        assert response.json()["code"] == "not_found"
        assert f"/{prefix}/v1/no-such-route" in response.json()["message"], response.text
