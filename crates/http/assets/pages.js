// The one script of Portcullis's pages; their Content-Security-Policy allows it by its hash and
// nothing else. Every page works without it, except passkeys, which need the browser's API.
//
// Copy buttons: a `button[data-copy]` (hidden until this runs) copies the text of the element
// whose id it names.
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.hidden = false;
  button.addEventListener("click", async () => {
    const text = document.getElementById(button.dataset.copy).innerText.trim();
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch (error) {
      button.textContent = "Copying failed: select the text and copy it";
    }
  });
}

// Passkeys: a form marked `data-passkey` (the WebAuthn options, as JSON) runs the browser's
// ceremony when submitted, puts the answer in its `credential` field and posts it.
(() => {
  const encode = (buffer) =>
    btoa(String.fromCharCode(...new Uint8Array(buffer)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const decode = (text) =>
    Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const keys = (ids) => ids.map((id) => ({ type: "public-key", id: decode(id) }));

  async function ceremony(o) {
    if (o.ceremony === "create") {
      const made = await navigator.credentials.create({
        publicKey: {
          rp: { id: o.rp_id, name: o.rp_name },
          user: { id: decode(o.user_id), name: o.user_name, displayName: o.display_name },
          challenge: decode(o.challenge),
          pubKeyCredParams: [-7, -8, -257].map((alg) => ({ type: "public-key", alg })),
          authenticatorSelection: { residentKey: "required", userVerification: "required" },
          excludeCredentials: keys(o.exclude),
          attestation: "none",
          timeout: 120000,
        },
      });
      return {
        clientDataJSON: encode(made.response.clientDataJSON),
        attestationObject: encode(made.response.attestationObject),
      };
    }
    const used = await navigator.credentials.get({
      publicKey: {
        rpId: o.rp_id,
        challenge: decode(o.challenge),
        allowCredentials: keys(o.allow),
        userVerification: o.user_verification,
        timeout: 120000,
      },
    });
    return {
      id: used.id,
      clientDataJSON: encode(used.response.clientDataJSON),
      authenticatorData: encode(used.response.authenticatorData),
      signature: encode(used.response.signature),
      userHandle: used.response.userHandle ? encode(used.response.userHandle) : null,
    };
  }

  for (const form of document.querySelectorAll("form[data-passkey]")) {
    const problem = form.querySelector(".passkey-error");
    if (!window.PublicKeyCredential) {
      form.hidden = true;
      continue;
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const answer = await ceremony(JSON.parse(form.dataset.passkey));
        form.querySelector("input[name=credential]").value = JSON.stringify(answer);
        form.submit();
      } catch (error) {
        problem.textContent = "The passkey did not work (" + error.name + "). Try again, or use another way.";
        problem.hidden = false;
      }
    });
  }
})();
