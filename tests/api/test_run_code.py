"""``POST /run_code`` driven by SandboxFusion's own client (the ``sandbox-fusion`` package from
PyPI, nobody here wrote it) against a live server on the local sandbox; and the edges of
SandboxFusion's documented behaviour (limits, errors, files) over plain HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from sandbox_fusion import RunCodeRequest, RunStatus, run_code

from tests.api.conftest import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Any) -> Iterator[LiveServer]:
    from service.api.app import create_app
    from tests.api.conftest import make_settings

    settings = make_settings(tmp_path_factory.mktemp("data"), mbpp_path, load_humaneval=False,
                             sandbox_timeout_s=3.0)
    with LiveServer(create_app(settings)) as live:
        yield live


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def call(server: LiveServer, **fields: Any) -> Any:
    return run_code(RunCodeRequest(language="python", **fields), endpoint=server.url,
                    max_attempts=1, client_timeout=60)


def test_the_client_runs_a_script_with_stdin(server: LiveServer) -> None:
    done = call(server, code="name = input()\nprint(f'hello {name}')", stdin="world\n")
    assert done.status == RunStatus.Success
    assert done.run_result.status == "Finished"
    assert done.run_result.return_code == 0
    assert done.run_result.stdout == "hello world\n"
    assert done.run_result.stderr == ""
    assert 0 < done.run_result.execution_time < 3


def test_a_failing_script_is_failed_with_its_traceback(server: LiveServer) -> None:
    done = call(server, code="def f(x):\n    return 1 / x\n\nprint('before')\nf(0)\n")
    assert done.status == RunStatus.Failed
    assert done.run_result.return_code == 1
    assert done.run_result.stdout == "before\n"
    assert "Traceback (most recent call last)" in done.run_result.stderr
    assert 'main.py", line 2, in f' in done.run_result.stderr
    assert done.run_result.stderr.rstrip().endswith("ZeroDivisionError: division by zero")


def test_exit_codes_and_main_guard(server: LiveServer) -> None:
    done = call(server, code="import sys\nif __name__ == '__main__':\n    print('main')\n"
                             "    sys.exit(3)\n")
    assert (done.status, done.run_result.return_code, done.run_result.stdout) == \
        (RunStatus.Failed, 3, "main\n")
    assert call(server, code="raise SystemExit(0)").status == RunStatus.Success
    quit_text = call(server, code="import sys\nsys.exit('bye')")
    assert (quit_text.run_result.return_code, quit_text.run_result.stderr) == (1, "bye\n")


def test_a_signal_is_a_negative_return_code(server: LiveServer) -> None:
    done = call(server, code="import os, signal\nprint('x', flush=True)\n"
                             "os.kill(os.getpid(), signal.SIGSEGV)\n")
    assert (done.status, done.run_result.status) == (RunStatus.Failed, "Finished")
    assert done.run_result.return_code == -11 and done.run_result.stdout == "x\n"
    early = call(server, code="import os\nos._exit(7)")
    assert early.run_result.return_code == 7


def test_syntax_error(server: LiveServer) -> None:
    done = call(server, code="def f(:\n    pass\n")
    assert done.status == RunStatus.Failed and done.run_result.return_code == 1
    assert "SyntaxError" in done.run_result.stderr


def test_time_limit(server: LiveServer) -> None:
    done = call(server, code="print('start', flush=True)\nwhile True:\n    pass\n",
                run_timeout=1)
    assert done.status == RunStatus.Failed
    assert done.run_result.status == "TimeLimitExceeded"
    assert done.run_result.return_code is None
    assert done.run_result.stdout == "start\n"
    assert 0.9 < done.run_result.execution_time < 3


def test_files_are_in_the_working_directory_and_importable(server: LiveServer) -> None:
    done = call(server, code="import helper\nprint(helper.twice(21), open('data/in.txt').read())",
                files={"helper.py": b64(b"def twice(x):\n    return 2 * x\n"),
                       "data/in.txt": b64(b"from a file")})
    assert done.status == RunStatus.Success, done
    assert done.run_result.stdout == "42 from a file\n"


def test_memory_limit_and_server_limits_over_http(server: LiveServer) -> None:
    with server.client() as http:
        big = http.post("/run_code", json={"code": "x = bytearray(512 * 2**20)\nprint('ok')",
                                           "language": "python", "memory_limit_MB": 128})
        assert big.status_code == 200
        body = big.json()
        assert body["status"] == "Failed" and body["run_result"]["return_code"] == 1
        assert "MemoryError" in body["run_result"]["stderr"]
        # run_timeout above the server's LETI_SANDBOX_TIMEOUT_S (3 s here) is clamped to it
        slow = http.post("/run_code", json={"code": "import time\ntime.sleep(30)",
                                            "language": "python", "run_timeout": 100}).json()
        assert slow["run_result"]["status"] == "TimeLimitExceeded"
        assert slow["run_result"]["execution_time"] < 10


@pytest.mark.parametrize("body, status, says", [
    ({"code": "print(1)", "language": "cpp"}, 422, "only 'python'"),
    ({"code": "print(1)"}, 422, "language"),
    ({"code": "print(1)", "language": "python", "files": {"../x": b64(b"x")}}, 422, "relative"),
    ({"code": "print(1)", "language": "python", "files": {"/etc/x": b64(b"x")}}, 422, "relative"),
    ({"code": "print(1)", "language": "python", "files": {"a.txt": "not base64!"}}, 422,
     "base64"),
    ({"code": "print(1)", "language": "python", "fetch_files": ["a.txt"]}, 422, "fetch_files"),
    ({"code": "print(1)", "language": "python", "memory_limit_MB": 8}, 422, "at least 32"),
    ({"code": "print(1)", "language": "python", "run_timeout": 0}, 422, "run_timeout"),
    ({"code": "x" * 70_000, "language": "python"}, 413, "LETI_MAX_PROGRAM_BYTES"),
])
def test_bad_requests_are_clear_4xx(server: LiveServer, body: dict[str, Any], status: int,
                                    says: str) -> None:
    with server.client() as http:
        answer = http.post("/run_code", json=body)
    assert answer.status_code == status, answer.text
    assert says in answer.text


def test_the_client_raises_on_a_refused_request(server: LiveServer) -> None:
    with pytest.raises(Exception, match="422"):
        run_code(RunCodeRequest(code="print(1)", language="cpp"), endpoint=server.url,
                 max_attempts=1)
