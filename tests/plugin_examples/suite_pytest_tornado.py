"""The pytest-tornado style: an ``app`` fixture, http_client, base_url and
the gen_test marker."""
import json

import pytest

import webapp


@pytest.fixture
def app():
    return webapp.make_app()


@pytest.mark.gen_test
def test_hello(http_client, base_url):
    response = yield http_client.fetch(base_url)
    assert response.code == 200
    assert response.body == b"Hello, world"


@pytest.mark.gen_test
async def test_sum(http_client, base_url):
    response = await http_client.fetch(base_url + "/sum?a=2&b=3")
    assert json.loads(response.body) == {"sum": 5}


@pytest.mark.gen_test(timeout=10)
def test_slow(http_client, base_url):
    response = yield http_client.fetch(base_url + "/slow")
    assert response.body == b"done"


def test_port(http_port, base_url):
    assert base_url == "http://localhost:%d" % http_port


@pytest.mark.gen_test
def test_coroutine_helper(io_loop):
    total = yield webapp.add(20, 22)
    assert total == 42
