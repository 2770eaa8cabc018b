"""EC2 API actions localcloud completes after moto: ``RebootInstances`` reboots the instances' agents."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from localcloud.awsquery import ApiRequest
from localcloud.frontend import Forward, Interceptor, Response

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud

INSTANCE_PARAM = re.compile(r"^InstanceId\.\d+$")


def interceptors(cloud: "LocalCloud") -> dict[str, Interceptor]:
    """The ``ec2:Action`` handlers, bound to ``cloud``."""

    def reboot_instances(req: ApiRequest, forward: Forward) -> Response:
        response = forward()  # moto validates the ids (InvalidInstanceID.NotFound) and answers
        if response[0].startswith("200"):
            for key in sorted(k for k in req.params if INSTANCE_PARAM.match(k)):
                cloud.reboot(req.params[key])
        return response

    return {"ec2:RebootInstances": reboot_instances}
