// Say why the last login failed (the server redirects to /login?failed=1).
"use strict";
document.getElementById("failed").hidden = !new URLSearchParams(location.search).has("failed");
